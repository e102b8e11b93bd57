"""The UI's words in English and Chinese.

Field labels are the spec keys themselves (what the YAML says), with a Chinese name in front in Chinese;
help texts come from the spec's descriptions in English, and from ZH_HELP in Chinese where written
(the English description is shown otherwise, so no option is ever without help).
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "中文"}

TEXT = {
    "title": {"en": "ffc: the fine-tuning factory compiler", "zh": "ffc：微调工厂编译器"},
    "subtitle": {
        "en": "Fill in the form, preview exactly what ffc generates, build the run directory, then train, watch, chat, evaluate and export.",
        "zh": "填写表单，预览 ffc 将生成的全部文件，构建运行目录，然后训练、监控、对话、评测和导出。",
    },
    "language": {"en": "Language", "zh": "语言"},
    "tab_config": {"en": "Configure", "zh": "配置"},
    "tab_preview": {"en": "Preview", "zh": "预览"},
    "tab_train": {"en": "Train", "zh": "训练"},
    "tab_chat": {"en": "Chat", "zh": "对话"},
    "tab_eval": {"en": "Evaluate", "zh": "评测"},
    "tab_export": {"en": "Export", "zh": "导出"},
    "run_name": {"en": "Run name", "zh": "运行名称"},
    "run_name_info": {
        "en": "Names the spec file (<name>.yaml) and the run directory (runs/<name>/) in the workspace.",
        "zh": "决定工作区中的配置文件名（<name>.yaml）和运行目录（runs/<name>/）。",
    },
    "advanced": {"en": "More options", "zh": "更多选项"},
    "suggested_template": {"en": "Suggested chat template", "zh": "推荐的对话模板"},
    "no_suggestion": {"en": "no suggestion", "zh": "无推荐"},
    "load_path": {"en": "Spec file or run directory to load", "zh": "要加载的配置文件或运行目录"},
    "load": {"en": "Load", "zh": "加载"},
    "save_path": {"en": "Save the form as (spec file)", "zh": "将表单保存为（配置文件）"},
    "save": {"en": "Save spec", "zh": "保存配置"},
    "dataset_preview": {"en": "Preview dataset", "zh": "预览数据集"},
    "dataset_preview_out": {"en": "Rows and how they are tokenised («…» is trained)", "zh": "数据样例及其分词结果（«…» 为参与训练的部分）"},
    "preview": {"en": "Preview", "zh": "预览"},
    "build": {"en": "Build", "zh": "构建"},
    "status": {"en": "Status", "zh": "状态"},
    "spec_yaml": {"en": "Spec (YAML)", "zh": "配置（YAML）"},
    "generated_file": {"en": "Generated file", "zh": "生成的文件"},
    "file_content": {"en": "Content", "zh": "内容"},
    "diff": {"en": "Changes against the last build", "zh": "与上次构建的差异"},
    "start": {"en": "Start training", "zh": "开始训练"},
    "stop": {"en": "Stop", "zh": "停止"},
    "refresh": {"en": "Refresh", "zh": "刷新"},
    "run": {"en": "Run", "zh": "运行"},
    "progress": {"en": "Progress", "zh": "进度"},
    "log": {"en": "Log (last lines)", "zh": "日志（最后几行）"},
    "loss_curve": {"en": "Training loss", "zh": "训练损失"},
    "runs": {"en": "Runs in this workspace", "zh": "工作区中的运行"},
    "runs_headers": {
        "en": ["run", "status", "steps", "last loss", "changed"],
        "zh": ["运行", "状态", "步数", "最新损失", "更新时间"],
    },
    "start_server": {"en": "Start model server (serve.py)", "zh": "启动模型服务（serve.py）"},
    "stop_server": {"en": "Stop server", "zh": "停止服务"},
    "message": {"en": "Message", "zh": "消息"},
    "send": {"en": "Send", "zh": "发送"},
    "clear": {"en": "Clear", "zh": "清空"},
    "system_prompt": {"en": "System prompt (optional)", "zh": "系统提示词（可选）"},
    "run_eval": {"en": "Run evaluation (eval.py)", "zh": "运行评测（eval.py）"},
    "eval_args": {"en": "Extra arguments for eval.py", "zh": "eval.py 的额外参数"},
    "run_export": {"en": "Merge and export (export.py)", "zh": "合并并导出（export.py）"},
    "export_args": {"en": "Extra arguments for export.py", "zh": "export.py 的额外参数"},
    "results": {"en": "Results", "zh": "结果"},
    "chatbot": {"en": "Conversation", "zh": "对话"},
    "not_built": {"en": "Build the run first.", "zh": "请先构建该运行。"},
    "valid": {"en": "The spec is valid.", "zh": "配置有效。"},
    "invalid": {"en": "The spec has problems:", "zh": "配置存在问题："},
    "never_built": {"en": "(not built yet: every file is new)", "zh": "（尚未构建：所有文件都是新的）"},
    "no_changes": {"en": "(no changes)", "zh": "（无变化）"},
}

SECTION_TITLES = {
    "model": {"en": "Model", "zh": "模型"},
    "method": {"en": "Method: stage and tuning", "zh": "方法：训练阶段与微调方式"},
    "data": {"en": "Data", "zh": "数据"},
    "training": {"en": "Training", "zh": "训练参数"},
    "logging": {"en": "Logging", "zh": "日志"},
    "distributed": {"en": "Distributed training", "zh": "分布式训练"},
    "inference": {"en": "Inference (chat, serve, eval)", "zh": "推理（对话、服务、评测）"},
    "serve": {"en": "OpenAI-style API server", "zh": "OpenAI 风格 API 服务"},
    "eval": {"en": "Evaluation", "zh": "评测"},
    "export": {"en": "Export", "zh": "导出"},
}

# Chinese names and help for the options people set most; others keep their key and English help.
ZH_LABEL = {
    "name": "运行名", "model.model_name_or_path": "模型路径", "model.quantization_bit": "量化位数",
    "model.attn_implementation": "注意力实现", "model.trust_remote_code": "信任远程代码",
    "method.stage": "训练阶段", "method.finetuning_type": "微调方法", "method.lora_rank": "LoRA 秩",
    "method.lora_alpha": "LoRA 缩放系数", "method.lora_dropout": "LoRA 随机丢弃", "method.lora_target": "LoRA 作用模块",
    "method.use_dora": "使用 DoRA", "method.use_rslora": "使用 rsLoRA", "method.pref_beta": "偏好 beta",
    "method.pref_loss": "偏好损失", "method.freeze_trainable_layers": "可训练层数",
    "data.dataset": "数据集", "data.dataset_dir": "数据目录", "data.template": "对话模板", "data.cutoff_len": "截断长度",
    "data.packing": "序列打包", "data.val_size": "验证集比例", "data.max_samples": "最大样本数",
    "data.train_on_prompt": "训练提示词", "data.mask_history": "仅训练最后一轮",
    "training.output_dir": "输出目录", "training.num_train_epochs": "训练轮数", "training.max_steps": "最大步数",
    "training.per_device_train_batch_size": "单卡批大小", "training.gradient_accumulation_steps": "梯度累积步数",
    "training.learning_rate": "学习率", "training.lr_scheduler_type": "学习率调度器", "training.warmup_ratio": "预热比例",
    "training.weight_decay": "权重衰减", "training.max_grad_norm": "最大梯度范数", "training.bf16": "bf16 混合精度",
    "training.fp16": "fp16 混合精度", "training.gradient_checkpointing": "梯度检查点", "training.logging_steps": "日志间隔",
    "training.save_steps": "保存间隔", "training.seed": "随机种子",
    "logging.report_to": "记录到", "logging.plot_loss": "绘制损失曲线",
    "distributed.backend": "并行后端", "distributed.num_processes": "进程数", "distributed.num_machines": "机器数",
    "inference.temperature": "温度", "inference.top_p": "Top-p", "inference.max_new_tokens": "最大生成长度",
    "export.export_dir": "导出目录", "export.gguf": "GGUF 格式", "export.ollama": "Ollama 模型文件",
}  # fmt: skip

ZH_HELP = {
    "model.model_name_or_path": "Hub 模型名（如 Qwen/Qwen2.5-0.5B-Instruct）或本地模型目录。",
    "model.quantization_bit": "以 4 或 8 位加载基座模型（QLoRA）；留空为不量化。",
    "method.stage": "pt 预训练，sft 指令微调，rm 奖励模型，ppo/dpo/kto/orpo/simpo/grpo 偏好与强化学习。",
    "method.finetuning_type": "full 全参数，freeze 冻结部分层，lora 低秩适配器。",
    "method.lora_rank": "LoRA 矩阵的秩：越大可训练参数越多。",
    "method.lora_alpha": "LoRA 缩放系数（默认为秩的两倍）。",
    "method.lora_target": "加 LoRA 的模块名（all 表示全部线性层）。",
    "data.dataset": "dataset_info.json 中登记的数据集名，可多选。",
    "data.dataset_dir": "包含 dataset_info.json 的目录（相对于配置文件）。",
    "data.template": "用于训练与推理的对话模板；tokenizer 表示使用分词器自带模板。",
    "data.cutoff_len": "分词后样本的最大长度（token 数），过长的样本会被截断。",
    "data.packing": "将多个短样本拼接进一个序列以提高吞吐（样本之间互不可见）。",
    "data.val_size": "划出的验证集：小于 1 为比例，否则为样本数。",
    "data.max_samples": "每个数据集最多使用的样本数。",
    "training.output_dir": "检查点与最终模型的保存位置（相对于运行目录）。",
    "training.num_train_epochs": "训练的轮数（设置了 max_steps 时以步数为准）。",
    "training.max_steps": "训练的总步数；大于 0 时覆盖轮数。",
    "training.per_device_train_batch_size": "每个设备每步的样本数。",
    "training.gradient_accumulation_steps": "累积多少步的梯度再更新一次参数。",
    "training.learning_rate": "AdamW 的初始学习率。",
    "training.lr_scheduler_type": "学习率随训练变化的方式。",
    "training.bf16": "使用 bf16 混合精度（需要支持的 GPU）。",
    "training.gradient_checkpointing": "以重新计算换取显存：更省显存，稍慢。",
    "training.logging_steps": "每隔多少步记录一次损失。",
    "distributed.backend": "none 单进程；ddp 数据并行；deepspeed ZeRO；fsdp 全分片数据并行。",
    "distributed.num_processes": "所有机器上的进程总数（通常每块 GPU 一个）。",
    "inference.temperature": "采样温度：越高越随机，0 为贪心解码。",
    "inference.max_new_tokens": "每次回答最多生成的 token 数。",
}


def text(key: str, lang: str):
    entry = TEXT[key]
    return entry.get(lang, entry["en"])


def label(path: str, lang: str) -> str:
    key = path.split(".", 1)[-1] if "." in path else path
    if lang == "zh" and path in ZH_LABEL:
        return f"{ZH_LABEL[path]} ({key})"
    return key


def help_text(path: str, description: str, lang: str) -> str:
    if lang == "zh":
        return ZH_HELP.get(path, description)
    return description


def section_title(section: str, lang: str) -> str:
    return SECTION_TITLES[section].get(lang, SECTION_TITLES[section]["en"])
