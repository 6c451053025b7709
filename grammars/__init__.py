"""Lark grammar files (package data)."""
