"""Persistence: sessions, messages, usage and cooldowns behind one small `Store` interface."""
