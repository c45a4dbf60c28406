"""A one-model Bauplan project for the notifications example (rehearsal mode never runs it)."""

import bauplan


@bauplan.model(materialization_strategy="REPLACE")
@bauplan.python("3.11")
def daily_trips(
    trips=bauplan.Model("taxi_fhvhv", columns=["pickup_datetime", "trip_miles"]),
    run_date=bauplan.Parameter("run_date"),
):
    """The trips of one day: the day the trigger passes in as run_date."""
    return trips.filter(trips["pickup_datetime"].cast("string").starts_with(run_date))
