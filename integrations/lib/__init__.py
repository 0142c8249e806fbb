"""Plain helpers that are not Django-specific: encryption, random ids and token hashing."""
