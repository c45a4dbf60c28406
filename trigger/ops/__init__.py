"""What operators use: the ``/api`` (``api``), the status page (``page``), ``/metrics``
(``metrics``), ``explain`` (an event's or run's story), run ``control`` (retry, cancel,
resume), ``checks`` (``check``) and ``follow`` (``fire --wait``)."""
