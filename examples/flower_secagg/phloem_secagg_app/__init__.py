"""A Flower app whose FedAvg rounds run through phloem's secure aggregation.

``client_app.app`` and ``server_app.app`` are the components named in ``pyproject.toml``;
``task`` holds the data and the local training (numpy only).
"""
