"""Level 5, fine-tuning: teaching a pretrained model to answer, and to prefer better answers."""
