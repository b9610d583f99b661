SELECT record_usage_batch(1000);
