enum _PlaceholderCairnWorker {}
