"""Sensors that wait for Segmind requests submitted elsewhere."""
