"""Settlement models, windows, multilateral netting and statements."""
