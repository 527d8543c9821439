"""The account book: accounts from account.changed, and matching leads to them."""
