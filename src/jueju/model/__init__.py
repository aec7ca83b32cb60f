"""The model: the stacked-LSTM network, the devices it trains on, and reading it one step at a time."""
