"""Fine-tuning a pretrained GPT: teach it to answer, cheaply.

* :mod:`~fromzero.finetune.instructions`: reading question/answer records, conversations and preference pairs;
* :mod:`~fromzero.finetune.templates`: the prompt templates (qa, alpaca, chat, your own), their exact text;
* :mod:`~fromzero.finetune.batches`: token ids and labels (-100 on the prompt), truncation, padding, packing;
* :mod:`~fromzero.finetune.vocab`: special tokens a tokenizer gains and the embedding rows the model gains;
* :mod:`~fromzero.finetune.losses`: the SFT loss and the DPO/IPO loss, as functions of logits and log-probs;
* :mod:`~fromzero.finetune.lora`: LoRA adapters written out in full (config, layer, merge, switch, disable);
* :mod:`~fromzero.finetune.peft_format`: saving and loading adapters in PEFT's file format.
"""
