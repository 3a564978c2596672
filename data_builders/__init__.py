"""Builders of instruction records from imagery, OpenStreetMap and public datasets."""
