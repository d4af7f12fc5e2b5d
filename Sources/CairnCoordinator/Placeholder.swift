enum _PlaceholderCairnCoordinator {}
