"""Training: the loop and its run folder (training, runfolder), fine-tuning the last stage (finetune), and the
checks of what a user types (parameters, guards)."""
