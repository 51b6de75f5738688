"""Demos built on realtime_cascade."""
