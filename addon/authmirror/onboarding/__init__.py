"""Guided onboarding of upstream registries: per-type guides, asking, live check, config editing."""
