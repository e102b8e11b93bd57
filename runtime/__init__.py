"""The library generated run directories import: data, chat templates, trainers, inference, export."""
