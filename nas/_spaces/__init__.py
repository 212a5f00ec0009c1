"""Search spaces: choices, the base class, the registry and architecture files."""
