"""Search spaces, one module each; every module registers its space with ``nas.register_space``.

Add a space by writing ``search_spaces/<name>.py`` (a ``SearchSpace`` subclass decorated with
``@register_space("<name>")``) and ``conf/space/<name>.yaml`` (its options): nothing in ``nas/``
changes. ``nas.get_space("<name>")`` imports the module on first use.
"""
