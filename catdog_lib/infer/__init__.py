"""Using a trained model: evaluation and prediction (evaluation), ONNX export (export), Grad-CAM (gradcam),
calibration plots, the web demo (demo, upload) and a user's own photo (own_photo)."""
