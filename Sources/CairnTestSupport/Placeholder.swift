enum _PlaceholderCairnTestSupport {}
