from . import res_users, task_test_item
