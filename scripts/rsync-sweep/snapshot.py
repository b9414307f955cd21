import os,sys,hashlib,stat,time
NOW=time.time_ns()
def mt(ns):
    return 'recent' if NOW-ns < 600*10**9 else ns
def snap(root):
    out={}
    for dp,dns,fns in os.walk(root):
        for n in dns+fns+(['.'] if dp==root else []):
            p=os.path.join(dp,n) if n!='.' else dp
            rel=os.path.relpath(p,root)
            st=os.lstat(p)
            t=stat.S_IFMT(st.st_mode)
            d=[oct(st.st_mode),st.st_uid,st.st_gid]
            if stat.S_ISREG(t) or stat.S_ISLNK(t): d.append(mt(st.st_mtime_ns))
            if stat.S_ISDIR(t): d.append(st.st_mtime_ns if os.environ.get('DIRT') else 0)
            if stat.S_ISLNK(t): d.append(os.readlink(p))
            elif stat.S_ISREG(t):
                d.append(st.st_size); d.append(hashlib.md5(open(p,'rb').read()).hexdigest()); d.append(st.st_nlink)
            out[rel]=d
    return out
a=snap(sys.argv[1]); b=snap(sys.argv[2])
bad=0
for k in sorted(set(a)|set(b)):
    if a.get(k)!=b.get(k):
        bad+=1
        if bad<=6: print('  DIFF',k,a.get(k),b.get(k))
sys.exit(1 if bad else 0)
