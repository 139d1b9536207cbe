"""The fleet web page: a gallery of every bot and a page per bot, built from the object store
(and, on a cluster, the BotRequests). Torch-free: the operator image serves it."""
