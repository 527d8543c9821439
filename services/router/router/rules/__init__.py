"""The routing rules agreement (kind `routing`): router owns it; sales or ops approve it."""
