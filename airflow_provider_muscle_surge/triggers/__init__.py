"""Triggers that wait for Segmind requests in the triggerer."""
