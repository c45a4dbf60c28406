"""What operators use: the ``/api`` (``api``, behind ``guard``, its answers' models in
``answers``, Swagger UI at ``/docs`` in ``docs``), the status page (``page``), ``/metrics``
(``metrics``), ``explain`` (an event's or run's story), run ``control`` (retry, cancel,
resume), ``checks`` (``check``) and ``follow`` (``fire --wait``)."""
