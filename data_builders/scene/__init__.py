"""Synthetic aerial scenes: a procedural layout with OpenStreetMap tags, and its painting."""
