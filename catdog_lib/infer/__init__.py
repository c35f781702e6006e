"""Using a trained model: load a checkpoint or an exported ONNX file, measure it and predict (evaluation), ONNX
export (export), Grad-CAM (gradcam), calibration plots, the web demo (demo, upload) and a user's own photo
(own_photo)."""
