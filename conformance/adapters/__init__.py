"""Adapters: built-in targets that map real optimizer libraries onto the optconform protocol (call signatures only)."""
