"""Stream entries the event consumer gave up on, kept for inspection."""
