enum _PlaceholderCairnClient {}
