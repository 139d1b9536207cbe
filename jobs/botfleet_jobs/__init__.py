"""botfleet's training job: Ray Train + DeepSpeed fine-tuning, evaluation, tracking, the model card."""
