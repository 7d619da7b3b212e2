# An Unsloth FastModel notebook's shape (Gemma 3, text): FastModel, LoRA targets chosen by the finetune_* switches,
# the gemma-3 chat template over list-of-parts messages, standardize_data_formats, SFTTrainer with loss on the answers
# only, generation, then the save cells (FastModel's `quantization_type`). Written for attnpick's tests and as an
# example; the only attnpick-specific edit is the import lines. Run it in a folder holding conversations.jsonl
# ({"conversations": [{"from": "human", "value": ...}, ...]}).

# %% Load the model
from attnpick import FastModel  # was: from unsloth import FastModel
import torch

model, tokenizer = FastModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/gemma-3-4b-it" (a text model here: attnpick loads text models)
    max_seq_length = 2048,
    load_in_4bit = True,
    load_in_8bit = False,
    full_finetuning = False,
)

# %% LoRA adapters
model = FastModel.get_peft_model(
    model,
    finetune_vision_layers = False,
    finetune_language_layers = True,
    finetune_attention_modules = True,
    finetune_mlp_modules = True,
    r = 8,
    lora_alpha = 8,
    lora_dropout = 0,
    bias = "none",
    random_state = 3407,
)

# %% Data: the gemma-3 template, standardized conversations
from attnpick.chat_templates import get_chat_template  # was: from unsloth.chat_templates import ...
tokenizer = get_chat_template(tokenizer, chat_template = "gemma-3")

from datasets import load_dataset
dataset = load_dataset("json", data_files = "conversations.jsonl", split = "train")
from attnpick.chat_templates import standardize_data_formats
dataset = standardize_data_formats(dataset)

def formatting_prompts_func(examples):
    convos = examples["conversations"]
    texts = [tokenizer.apply_chat_template(convo, tokenize = False, add_generation_prompt = False).removeprefix("<bos>")
             for convo in convos]
    return {"text": texts}

dataset = dataset.map(formatting_prompts_func, batched = True)
print(dataset[0]["text"][:200])

# %% Train on the answers only
from trl import SFTTrainer, SFTConfig
trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    eval_dataset = None,
    args = SFTConfig(
        dataset_text_field = "text",
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 4,
        warmup_steps = 5,
        max_steps = 3,
        learning_rate = 2e-4,
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.01,
        lr_scheduler_type = "linear",
        seed = 3407,
        report_to = "none",
        output_dir = "outputs",
    ),
)
from attnpick.chat_templates import train_on_responses_only
trainer = train_on_responses_only(
    trainer,
    instruction_part = "<start_of_turn>user\n",
    response_part = "<start_of_turn>model\n",
)
trainer_stats = trainer.train()

# %% Inference: list-of-parts messages
messages = [{"role": "user", "content": [{"type": "text", "text": "Continue the sequence: 1, 1, 2, 3, 5, 8,"}]}]
text = tokenizer.apply_chat_template(messages, tokenize = False, add_generation_prompt = True)
outputs = model.generate(
    **tokenizer([text], return_tensors = "pt").to(model.device),
    max_new_tokens = 16,
    temperature = 1.0, top_p = 0.95, top_k = 64,
)
print(tokenizer.batch_decode(outputs))

# %% Save the LoRA, merged, GGUF
model.save_pretrained("gemma-3")
tokenizer.save_pretrained("gemma-3")
if True:
    model.save_pretrained_merged("gemma-3-finetune", tokenizer)
if True:
    model.save_pretrained_gguf("gemma-3-finetune", quantization_type = "Q8_0")
