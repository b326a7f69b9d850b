"""The public survey pages (no login): the one-click rating links and the comment page."""
