"""Operators that submit Segmind requests."""
