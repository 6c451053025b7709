"""Jinja2 templates of generated modules (package data)."""
