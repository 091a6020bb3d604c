"""Fiscal registers (ККТ) and their fiscal drives (ФН): one state model, its metrics, and the sources
that fill it (device drivers, getad-service JSON files, POS plugin logs)."""
