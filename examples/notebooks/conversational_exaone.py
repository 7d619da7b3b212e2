# The notebook a Korean team runs for EXAONE 3.5, in Unsloth's shape: chat messages in Korean, EXAONE's own chat
# template, the answer markers inferred ([|user|], [|assistant|]), SFTConfig in TRL's current form, then every save
# cell. Run it in a folder holding messages.jsonl ({"messages": [{"role": "user", "content": ...}, ...]}).

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct"
    max_seq_length = 256,
    dtype = None,
    load_in_4bit = True,
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 16,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 16,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
)

# %% Data
from attnpick.chat_templates import get_chat_template

tokenizer = get_chat_template(tokenizer, chat_template = "exaone")
from datasets import load_dataset
dataset = load_dataset("json", data_files = "messages.jsonl", split = "train")
dataset = dataset.map(lambda row: {"text": tokenizer.apply_chat_template(row["messages"], tokenize = False)})

# %% Train
from trl import SFTConfig, SFTTrainer
from attnpick import is_bf16_supported

trainer = SFTTrainer(
    model = model,
    processing_class = tokenizer,
    train_dataset = dataset,
    args = SFTConfig(
        dataset_text_field = "text",
        max_length = 256,
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 2,
        max_steps = 3,
        learning_rate = 2e-4,
        bf16 = is_bf16_supported(),
        logging_steps = 1,
        seed = 3407,
        output_dir = "outputs",
        report_to = "none",
    ),
)
from attnpick.chat_templates import train_on_responses_only
trainer = train_on_responses_only(trainer)  # [|user|] ... [|assistant|]: inferred from the template
trainer_stats = trainer.train()

# %% Inference
FastLanguageModel.for_inference(model)
messages = [{"role": "user", "content": "서울에서 가 볼 만한 곳을 알려 주세요."}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt = True, return_tensors = "pt",
                                       return_dict = True).to(model.device)
outputs = model.generate(**inputs, max_new_tokens = 32)
print(tokenizer.decode(outputs[0][inputs["input_ids"].shape[1]:], skip_special_tokens = True))

# %% Save
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True:
    model, tokenizer = FastLanguageModel.from_pretrained(model_name = "lora_model", max_seq_length = 256,
                                                         load_in_4bit = True)
if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = ["q8_0", "f16"])
