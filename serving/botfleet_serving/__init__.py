"""Talking to bots: generation (``botfleet generate``) and the fleet's Ray Serve application,
an OpenAI-compatible completions API (``botfleet serve``, a RayService on a cluster).
Runs on the job image: it loads models with transformers and torch."""
