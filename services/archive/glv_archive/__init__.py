"""GLV archive: held sessions' recordings and chat, fetched, encrypted, stored, audited and purged."""
