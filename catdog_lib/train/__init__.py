"""Training: the loop and the run it writes (training), the batches it trains on (batching), one run per folder
(runlock), fine-tuning the last stage (finetune), and the checks of what a user types (parameters)."""
