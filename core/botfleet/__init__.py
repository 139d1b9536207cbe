"""botfleet: BotRequests in, fine-tuned GPT-2 bots with model cards out."""

__version__ = "0.1.0"
