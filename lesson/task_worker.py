# task_worker.py — the lesson's worker script, Python 3, changed only in address and key (marked "mpcluster:").
# The lesson (Python 2) caught Queue.Empty; on Python 3 the name is queue.Empty.

import time, sys, queue
from multiprocessing.managers import BaseManager
import os  # mpcluster: for the address and key below

# 创建类似的QueueManager:
class QueueManager(BaseManager):
    pass

# 由于这个QueueManager只从网络上获取Queue，所以注册时只提供名字:
QueueManager.register('get_task_queue')
QueueManager.register('get_result_queue')

# 连接到服务器，也就是运行task_master.py的机器:
server_addr = os.environ.get('LESSON_MASTER', '127.0.0.1')  # mpcluster: was '127.0.0.1'
print('Connect to server %s...' % server_addr)
# 端口和验证码注意保持与task_master.py设置的完全一致:
# mpcluster: port and key from the environment instead of 5000 and b'abc'
m = QueueManager(address=(server_addr, int(os.environ.get('LESSON_PORT', '5000'))),
                 authkey=open(os.environ['LESSON_AUTHKEY_FILE'], 'rb').read().strip())
# 从网络连接:
m.connect()
# 获取Queue的对象:
task = m.get_task_queue()
result = m.get_result_queue()
# 从task队列取任务,并把结果写入result队列:
for i in range(10):
    try:
        n = task.get(timeout=1)
        print('run task %d * %d...' % (n, n))
        r = '%d * %d = %d' % (n, n, n*n)
        time.sleep(1)
        result.put(r)
    except queue.Empty:
        print('task queue is empty.')
# 处理结束:
print('worker exit.')
