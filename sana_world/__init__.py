"""sana-world."""
