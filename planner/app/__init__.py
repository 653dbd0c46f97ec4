"""The use cases: one function each, settings in, values out.

This is the only place that wires the parts together (model -> offers -> decide -> infra). The
CLI parses, calls one function here and renders what it returns; nothing here prints or exits.

- ``app.model``: footprint, the model registry, the GPU table
- ``app.offers``: the offer list, catalog status and refresh
- ``app.plan``: recommend (rank offers for a model and a load)
- ``app.project``: generate, init, check
- ``app.ship``: deploy, status, destroy
"""
