"""The query budget one identity and endpoint share across every instance (Table entities: slots and
rate; docs/scale.md)."""
