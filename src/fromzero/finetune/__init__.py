"""Fine-tuning a pretrained GPT: teach it to answer, cheaply.

* :mod:`~fromzero.finetune.lora`: LoRA adapters written out in full (config, layer, merge, switch, disable);
* :mod:`~fromzero.finetune.peft_format`: saving and loading adapters in PEFT's file format.
"""
