"""The Ideal Customer Profile agreement (kind `icp`): scoring owns it; marketing and sales co-sign it."""
