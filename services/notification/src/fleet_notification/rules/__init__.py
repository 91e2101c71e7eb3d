"""Alert rules: which events of which vehicles alert whom, over which channels, when."""
