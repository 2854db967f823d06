"""Analytics on the store's streams. Not built yet: see issues 4 and 5."""
