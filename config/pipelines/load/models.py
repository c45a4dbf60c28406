"""A one-model Bauplan project for the file-drop and generic-webhook examples (rehearsal
mode never runs it): it records which file or table a trigger asked to load."""

import bauplan


@bauplan.model(materialization_strategy="APPEND")
@bauplan.python("3.11")
def load_requests(
    trips=bauplan.Model("taxi_fhvhv", columns=["pickup_datetime"]),
    source_file=bauplan.Parameter("source_file"),
    table=bauplan.Parameter("table"),
):
    """One row per load request: the file (or table) and when it was asked for."""
    import pyarrow as pa

    return pa.table({"source_file": [source_file], "table": [table]})
