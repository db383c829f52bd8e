"""Model adapters: one file per model, chosen by name through :mod:`visage.models.registry`."""
