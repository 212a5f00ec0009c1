"""Building blocks and networks, and the model zoo of published networks."""
